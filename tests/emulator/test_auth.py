"""Authentication and organization membership of the emulator's Web API, over HTTP.

Every Web API request needs ``Authorization: Bearer <token>``; the token names the user (a JWT's ``oid``
claim, read without checking the signature, or the token text itself). Without a token the answer is
401 with a ``WWW-Authenticate`` challenge and an empty body; a user outside the ``users`` mode gets 403
``0x80072560``. The control API under ``/_emulator/`` needs no token.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import requests

from dataverse_emulator.client import API_PATH, EmulatorClient

OID = "5f0c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"
NOT_A_MEMBER = {"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT shaped like an Entra ID access token: header.payload.signature."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "test-key"}
    signature = base64.urlsafe_b64encode(b"not-a-real-signature").rstrip(b"=").decode()
    return f"{b64url(header)}.{b64url(claims)}.{signature}"


def call(
    emulator: EmulatorClient, path: str, authorization: str | None, method: str = "GET", **kwargs: Any
) -> requests.Response:
    headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
    headers.update(kwargs.pop("headers", {}))
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.request(
        method, emulator.base_url + API_PATH + path, headers=headers, timeout=30, **kwargs
    )


def user_id(emulator: EmulatorClient, authorization: str) -> str:
    response = call(emulator, "WhoAmI", authorization)
    assert response.status_code == 200, response.text
    return str(response.json()["UserId"])


def assert_challenge(emulator: EmulatorClient, response: requests.Response) -> None:
    """A 401 with the Entra ID challenge naming the organization, and nothing in the body."""
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    match = re.fullmatch(
        r"Bearer authorization_uri=https://login\.microsoftonline\.com/([0-9a-f-]{36})/oauth2/authorize, "
        r"resource_id=(\S+)",
        challenge,
    )
    assert match, challenge
    assert match.group(2) == emulator.base_url + "/"
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"


def test_no_authorization_header_is_401_with_a_challenge(emulator: EmulatorClient) -> None:
    for path in ("WhoAmI", "contacts?$select=fullname", "EntityDefinitions(LogicalName='contact')", "nosuch"):
        assert_challenge(emulator, call(emulator, path, None))


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic aHlkcmF0aW9uLWFwcDpzZWNyZXQ=",
        "Negotiate hydration-app",
        "hydration-app",
        "Bearerhydration-app",
    ],
)
def test_missing_or_non_bearer_credentials_are_401(emulator: EmulatorClient, authorization: str) -> None:
    assert_challenge(emulator, call(emulator, "WhoAmI", authorization))


@pytest.mark.parametrize(
    "token",
    [
        "not!base64.@@@.sig",
        f"{b64url({'alg': 'none'})}.{base64.urlsafe_b64encode(b'[1, 2]').decode()}.sig",
        f"{b64url({'alg': 'none'})}.{b64url({'aud': 'https://org.crm.dynamics.com', 'oid': ''})}.sig",
    ],
    ids=["not-base64", "claims-not-an-object", "no-user-claim"],
)
def test_jwt_that_names_no_user_is_401(emulator: EmulatorClient, token: str) -> None:
    assert_challenge(emulator, call(emulator, "WhoAmI", f"Bearer {token}"))


def test_unauthenticated_write_changes_nothing(emulator: EmulatorClient) -> None:
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": "new_customerprofile_contact",
    }
    assert_challenge(emulator, call(emulator, "RelationshipDefinitions", None, "POST", json=body))
    stats = emulator.stats()
    assert stats["requests"] == {"unauthenticated": 1}
    assert stats["statuses"] == {"401": 1}
    assert stats["per_user"] == {}


def test_scheme_name_is_case_insensitive(emulator: EmulatorClient) -> None:
    assert user_id(emulator, "bearer hydration-app") == user_id(emulator, "Bearer hydration-app")
    assert user_id(emulator, "BEARER hydration-app") == user_id(emulator, "Bearer hydration-app")


def test_jwt_names_the_user_by_its_oid_claim(emulator: EmulatorClient) -> None:
    token = jwt(
        {
            "aud": "https://org.crm.dynamics.com",
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-0000000000aa/",
            "oid": OID,
            "appid": "11111111-2222-3333-4444-555555555555",
            "sub": "subject-of-the-token",
            "exp": 4_102_444_800,
        }
    )
    by_jwt = user_id(emulator, f"Bearer {token}")
    assert by_jwt == user_id(emulator, f"Bearer {OID}")
    assert by_jwt != user_id(emulator, "Bearer 11111111-2222-3333-4444-555555555555")
    assert by_jwt != user_id(emulator, "Bearer hydration-app")
    stats = emulator.stats()
    assert stats["per_user"][OID] == {"requests": 2}
    assert token not in stats["per_user"]
    assert set(stats["per_user"]) == {OID, "11111111-2222-3333-4444-555555555555", "hydration-app"}


def test_jwt_rows_are_counted_for_the_oid_user(emulator: EmulatorClient) -> None:
    token = jwt({"oid": OID})
    response = call(emulator, "contacts?$select=fullname&$top=3", f"Bearer {token}")
    assert response.status_code == 200, response.text
    assert len(response.json()["value"]) == 3
    assert emulator.stats()["per_user"] == {OID: {"requests": 1, "rows_read": 3}}


@pytest.mark.parametrize(
    ("claims", "user"),
    [
        ({"appid": "app-1", "upn": "someone@contoso.com"}, "app-1"),
        ({"azp": "app-2", "sub": "subject"}, "app-2"),
        ({"upn": "someone@contoso.com", "sub": "subject"}, "someone@contoso.com"),
        ({"sub": "subject"}, "subject"),
    ],
)
def test_jwt_without_oid_falls_back_to_other_claims(
    emulator: EmulatorClient, claims: dict[str, Any], user: str
) -> None:
    assert user_id(emulator, f"Bearer {jwt(claims)}") == user_id(emulator, f"Bearer {user}")
    assert emulator.stats()["per_user"][user] == {"requests": 2}


def test_members_pass_and_others_get_403(emulator: EmulatorClient) -> None:
    emulator.modes(users=["hydration-app", OID])
    member = call(emulator, "WhoAmI", "Bearer hydration-app")
    assert member.status_code == 200, member.text
    by_jwt = call(emulator, "WhoAmI", f"Bearer {jwt({'oid': OID})}")
    assert by_jwt.status_code == 200, by_jwt.text

    for path in ("WhoAmI", "contacts?$select=fullname", "EntityDefinitions(LogicalName='contact')"):
        outsider = call(emulator, path, "Bearer intruder")
        assert outsider.status_code == 403, outsider.text
        assert outsider.headers["Content-Type"] == "application/json; odata.metadata=minimal"
        assert outsider.headers["OData-Version"] == "4.0"
        assert outsider.json() == NOT_A_MEMBER
    # The user list is matched exactly: names differing in case are other users.
    assert call(emulator, "WhoAmI", "Bearer Hydration-App").status_code == 403
    assert call(emulator, "WhoAmI", f"Bearer {jwt({'oid': 'someone-else'})}").json() == NOT_A_MEMBER
    # Without a token it is still a 401, not a 403.
    assert_challenge(emulator, call(emulator, "WhoAmI", None))

    stats = emulator.stats()
    assert stats["statuses"] == {"200": 2, "403": 5, "401": 1}
    assert stats["requests"]["forbidden"] == 5


def test_outsider_cannot_write(emulator: EmulatorClient) -> None:
    emulator.modes(users=["hydration-app"])
    with emulator.web_api("hydration-app") as api:
        contact = api.get("contacts?$select=contactid&$top=1").json()["value"][0]["contactid"]
        before = api.get(f"contacts({contact})?$select=firstname").json()["firstname"]
    response = call(
        emulator,
        f"contacts({contact})",
        "Bearer intruder",
        "PATCH",
        json={"firstname": "Mallory"},
        headers={"If-Match": "*"},
    )
    assert response.status_code == 403, response.text
    assert response.json() == NOT_A_MEMBER
    with emulator.web_api("hydration-app") as api:
        assert api.get(f"contacts({contact})?$select=firstname").json()["firstname"] == before
    stats = emulator.stats()
    assert stats["rows_written"] == {}
    assert stats["per_user"]["intruder"] == {"requests": 1}


def test_users_mode_back_to_anyone(emulator: EmulatorClient) -> None:
    emulator.modes(users=[])
    assert call(emulator, "WhoAmI", "Bearer hydration-app").json() == NOT_A_MEMBER
    emulator.modes(users=None)
    assert call(emulator, "WhoAmI", "Bearer whoever").status_code == 200


def test_control_api_needs_no_token(emulator: EmulatorClient) -> None:
    emulator.modes(users=["hydration-app"])
    response = requests.get(f"{emulator.base_url}/_emulator/health", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "WWW-Authenticate" not in response.headers
    modes = requests.get(f"{emulator.base_url}/_emulator/modes", timeout=30)
    assert modes.status_code == 200
    assert modes.json()["users"] == ["hydration-app"]
