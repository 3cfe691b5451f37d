"""Training: state, steps, device drivers, losses, class weights, the training loop, XLA flags."""
