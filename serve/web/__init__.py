"""The Gradio web demo: chat, arena, rendering, and its command."""
