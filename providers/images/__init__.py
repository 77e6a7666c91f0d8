"""Image builds: a build's content-addressed identity (its context, Dockerfile, args and target),
and the builder that makes and pushes the image (buildah, daemonless)."""
