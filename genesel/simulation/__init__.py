"""The simulator's generative model: parameters and calibration, drawing a model, sampling."""
