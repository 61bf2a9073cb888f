"""Models: the ConvNeXt backbone and checkpoint key maps."""
