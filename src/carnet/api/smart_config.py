"""SMART App Launch 2.x discovery: ``/fhir/.well-known/smart-configuration`` and the CapabilityStatement's security.

The endpoints are those of Carnet's authorization server (``carnet.web.smart``), at the server's
root (``CARNET_BASE_URL`` without ``/fhir``); ``management_endpoint`` is the patient portal's
page of connected apps, where each can be revoked.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()

#: What Carnet's authorization server supports (SMART App Launch 2.2 capability set).
CAPABILITIES = (
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "permission-patient",
    "permission-v2",
    "permission-offline",
    "authorize-post",
    "sso-openid-connect",
)
SCOPES_SUPPORTED = (
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/Observation.cruds",
    "patient/Device.cruds",
    "patient/DocumentReference.rs",
    "system/*.rs",
)


def endpoints(base_url: str) -> dict[str, str]:
    """The authorization server's endpoints for a FHIR base URL (``…/fhir``)."""
    root = base_url.removesuffix("/fhir")
    return {
        "authorize": f"{root}/auth/authorize",
        "token": f"{root}/auth/token",
        "revoke": f"{root}/auth/revoke",
        "introspect": f"{root}/auth/introspect",
        "manage": f"{root}/patient/apps",
        "jwks": f"{root}/auth/jwks",
    }


def smart_configuration(base_url: str) -> dict[str, Any]:
    """The ``.well-known/smart-configuration`` document."""
    urls = endpoints(base_url)
    return {
        "issuer": base_url.removesuffix("/fhir"),
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": list(CAPABILITIES),
        "revocation_endpoint": urls["revoke"],
        "introspection_endpoint": urls["introspect"],
        "management_endpoint": urls["manage"],
    }


def security(base_url: str) -> dict[str, Any]:
    """The ``rest.security`` of the CapabilityStatement: SMART-on-FHIR, with the oauth-uris extension."""
    urls = endpoints(base_url)
    return {
        "cors": False,
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": urls["authorize"]},
                    {"url": "token", "valueUri": urls["token"]},
                    {"url": "revoke", "valueUri": urls["revoke"]},
                    {"url": "introspect", "valueUri": urls["introspect"]},
                    {"url": "manage", "valueUri": urls["manage"]},
                ],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            },
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "OAuth",
                    }
                ]
            },
        ],
        "description": (
            "Bearer tokens: OpenID Connect JWTs for people (embedded issuer in development); "
            "opaque access tokens from Carnet's SMART App Launch 2.x authorization server for "
            "apps (authorization code + PKCE S256) and backend services (client_credentials + "
            "private_key_jwt). See .well-known/smart-configuration."
        ),
    }


@router.get("/.well-known/smart-configuration", include_in_schema=False)
def well_known(request: Request) -> JSONResponse:
    """Answer the SMART configuration (always ``application/json``)."""
    base_url = request.app.state.services.settings.base_url
    return JSONResponse(smart_configuration(base_url))
