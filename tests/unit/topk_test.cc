// Top-k selection and index encodings: being written.
