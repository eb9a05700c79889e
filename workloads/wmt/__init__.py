"""wmt: German to English translation with an encoder-decoder Transformer."""
