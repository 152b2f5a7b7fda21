"""Reading, writing and geometry: files and DICOM in, the output grid, atomic writes out."""
