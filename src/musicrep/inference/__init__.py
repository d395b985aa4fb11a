"""Inference: embedding audio files and HDF5 splits with a trained encoder, and the `Encoder` API behind `musicrep.load_encoder`."""
