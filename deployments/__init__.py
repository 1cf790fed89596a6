"""Ray Serve applications: the HTTP ingress and the device deployments."""
