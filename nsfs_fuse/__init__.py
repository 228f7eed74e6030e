"""nsfs-fuse: every Linux namespace of the machine as a directory, TYPE:[INODE]."""

__version__ = "0.1.0"
