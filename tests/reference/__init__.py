"""PyTorch reference modules, written here (torchvision is not installable on our machines)."""
