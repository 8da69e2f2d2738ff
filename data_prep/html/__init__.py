"""ChatGPT-UI HTML -> markdown: shared rules, a fast regex renderer and the BeautifulSoup path."""
