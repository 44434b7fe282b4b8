"""The design: fixed and random-effect matrices, the response, the model object."""
