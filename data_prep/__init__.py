"""data_prep stage of fastchat-lite."""
