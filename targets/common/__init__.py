"""Code shared by every serving target: the CIFAR-10 data set and the paper's CNN."""
