"""Image -> lungs: the lung fields of a frontal chest X-ray and their six Brixia zones.

``fields`` (localisation, working size, intensity normalisation), ``outline`` (the classical outline finder),
``zones`` (zone names in Brixia A–F order and the split of a mask into zones).
"""
