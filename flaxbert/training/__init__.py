"""Training: the train state, optimizer recipes, pure steps and the fit / evaluate / predict loops."""
