"""Image + lungs -> feature vectors.

``embedding`` (SqueezeNet as Orange computes it), ``radiomic`` (intensity/texture/edges of the lung fields),
``zones`` (per-zone opacity features of the corona score), ``blocks`` (named feature sets, parallel extraction),
``cache`` (per-image file cache keyed by content hash and block version).
"""
