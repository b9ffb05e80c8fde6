"""What users read, in zh and en: the catalogs' API and how results are described."""
