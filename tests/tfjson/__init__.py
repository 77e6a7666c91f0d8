"""A real consumer of substratus's JSON plans: tfjson-check (main.go), which reads them with
github.com/hashicorp/terraform-json; checker.py finds or builds it, tests/e2e/test_tfjson.py runs it."""
