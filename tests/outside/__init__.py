"""Conformance suites written by others (Autobahn via kosoku, testssl.sh, httplint), run against rsgi."""
