"""Shared core of ConvMAE and VideoConvMAE: layers, masking, the masked autoencoder, engines."""
