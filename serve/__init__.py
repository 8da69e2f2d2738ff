"""serve: a model directory -> served behind an OpenAI-compatible API and a web demo.

Rooms: ``engine/`` batching, decoding, prompting, backends (torch, vLLM); ``cluster/`` controller,
worker, client and their internal protocol; ``openai/`` public schemas, service, routes, app;
``web/`` the Gradio demo. Beside them: ``config`` every serve command's options, ``schemas`` /
``errors`` / ``auth`` / ``error_handlers`` shared by the servers, ``local`` the one-machine
launcher, ``chat_cli`` the terminal chat, ``cli`` ``fastchat-lite serve``. Imports only
:mod:`fastchat_lite`; inside, engine <- cluster <- openai / web.
"""
