"""The data: reading the Melon layout, genres, splits, CF vectors, playlist tags, word2vec, the HDF5 splits, and the two builders (create_dataset, import_audio)."""
