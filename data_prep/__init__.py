"""data_prep: raw dumps -> clean, split, converted or generated training files (ShareGPT JSONL).

Rooms: ``html/`` ChatGPT-UI HTML -> markdown; ``clean`` the dump pipeline (filter, dedupe),
with ``workers`` (ordered process pool), ``reader``, ``checkpoint`` (resume), ``near_dup``,
``ui_chrome``; ``normalize`` / ``filters`` record checks; ``drops`` drop reasons, counts and
the report; ``split`` dialogs to a token budget; ``convert`` Alpaca / BELLE / OpenAI files;
``stats``; ``generate/`` self-instruct data from a teacher endpoint; ``cli`` the
``fastchat-lite data`` commands. Imports only :mod:`fastchat_lite`.
"""
