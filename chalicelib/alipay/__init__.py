"""The Alipay protocol, pure: no boto3, no Chalice. Checked by the vectors in tests/vectors."""
