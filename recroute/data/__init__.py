"""Datasets: RoutingDataset, loaders, splits, labels, synthetic data and bundled sets."""
