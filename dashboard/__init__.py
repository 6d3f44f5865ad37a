"""Clinician dashboard (Streamlit): pages in ``dashboard/pages``, shared loaders in ``state``, figures in ``charts``."""
