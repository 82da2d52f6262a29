"""Sign-in: Carnet as an OpenID Connect relying party (Pro Santé Connect and generic providers)."""
