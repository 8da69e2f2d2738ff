"""serve stage of fastchat-lite."""
