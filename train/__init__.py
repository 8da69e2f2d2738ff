"""train stage of fastchat-lite."""
