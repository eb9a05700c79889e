"""The ogbg workload: a GraphNet on ogbg-molpcba molecules, and its variants."""
