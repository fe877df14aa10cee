"""The HTTP API: views, their OpenAPI description, serializers, parsers, renderers, query options, URLs."""
