"""The fleet: device catalogue, YAML inventories, local emulated Ray clusters, cluster-launcher configs."""
