"""amaas_export - the translators of scripts/amaas-export, one module per family."""
