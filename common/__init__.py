"""Shared core of ConvMAE and VideoConvMAE: layers, masking, the masked autoencoder, engines.

Importing it changes no process-wide state; the tools and benchmarks call
``common.process_settings.configure_process()`` first.
"""
