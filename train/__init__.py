"""train: training files + a base model -> a fine-tuned Hugging Face model directory.

Rooms: ``config`` the TrainConfig (flags, YAML, defaults); ``recipe`` the run, wiring the rest;
``dataset`` / ``packing`` / ``collate`` samples to batches; ``model`` model, LoRA, checkpointing,
optimizer; ``loop`` the steps; ``checkpoint`` save and resume; ``distributed`` DDP / FSDP;
``metrics`` logs and the loss curve; ``cli`` ``fastchat-lite train``. Imports only
:mod:`fastchat_lite`.
"""
