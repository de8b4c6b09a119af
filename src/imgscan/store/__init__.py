"""imgscan's own store: locks, records, safe extraction, the layer index, import, gc, repair.

Mounting lives in :mod:`imgscan.mount`; neither package imports the other. What needs both
(``rmi`` refusing a mounted image, ``store check`` knowing about mount records) is composed
above them, in :mod:`imgscan.housekeeping`.
"""
