"""Reading what people share: images and links (the `zos analyze` stage)."""
