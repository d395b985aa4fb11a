"""The audio encoder's two output layers, by name (torch-free: command lines offer them
without loading torch).

    z    the CNN output, flattened: 2 x 512 x width (1024-d at width 1.0)
    z_d  the 128-d embedding after the head, the one the training losses see (default)
"""

LAYERS = ("z", "z_d")
DEFAULT_LAYER = "z_d"
EMBED_DIM = 128  # width of z_d, and of every view's embedding
