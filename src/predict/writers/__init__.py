"""Writers of the prediction files. Each writes a temp file and renames it, so no file is ever half written."""
