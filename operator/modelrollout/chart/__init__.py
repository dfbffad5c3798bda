"""The Helm chart's generated parts (charts/modelrollout): its values model and the files `make chart` writes."""
