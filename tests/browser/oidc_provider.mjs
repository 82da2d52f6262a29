// The OpenID provider of the sign-in tests: panva's oidc-provider (OpenID Certified), set up as
// Pro Santé Connect behaves (SPECS.md §b1), started by tests/oidc_provider.py.
//
//   node tests/browser/oidc_provider.mjs <config.json>
//
// config.json: {"issuer", "port", "signing_jwk" (private RSA JWK with a kid), "clients" (client
// metadata; Carnet's carries its public encryption key in "jwks" so ID tokens are JWEs),
// "accounts" ({accountId: PSC claims}), "resource" (Carnet's FHIR base URL), "audience",
// "access_token_seconds", "logout" (false: no end_session_endpoint)}.
//
// What it does like PSC: discovery also at /.well-known/wallet-openid-configuration; scope
// "scope_all" releases SubjectNameID, SubjectRole, SubjectRefPro…; acr from the login form
// (eidas1 by default); ID tokens signed RS256 then encrypted to the client's key; userinfo as a
// signed JWT (application/jwt); access tokens for Carnet's resource are JWTs carrying the same
// claims (as Keycloak issues them). PKCE is required. The login page is a plain form: choose an
// account and an acr level. Prints "ready <issuer>" once listening.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts;
const PSC_CLAIMS = [
  'SubjectNameID', 'SubjectRole', 'SubjectRefPro', 'SubjectOrganization', 'SubjectOrganizationID',
  'Secteur_Activite', 'Palier_Authentification', 'Mode_Acces_Raison', 'Acces_Regulation_Medicale',
  'given_name', 'family_name', 'preferred_username', 'codeCivilite', 'otherIds',
];

function identity(accountId) {
  const { ...claims } = accounts[accountId];
  return claims;
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: [config.signing_jwk] },
  cookies: { keys: ['carnet-test-provider-cookie-key'] },
  scopes: ['openid', 'scope_all', 'profile'],
  claims: { openid: ['sub'], scope_all: PSC_CLAIMS, profile: ['given_name', 'family_name', 'birthdate', 'gender'] },
  acrValues: ['eidas1', 'eidas2', 'eidas3', 'eidas0'],
  pkce: { required: () => true },
  ttl: {
    // The client "api-short" gets access tokens of one second (the expiry tests).
    AccessToken: (ctx, token, client) => (client && client.clientId === 'api-short' ? 1 : (config.access_token_seconds || 600)),
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    // RP-initiated logout (end_session_endpoint), unless the test asks for a provider without it.
    // Plain pages of our own: the library's defaults load web fonts from the internet.
    rpInitiatedLogout: {
      enabled: config.logout !== false,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html lang="en"><title>Sign out</title><main><h1>Sign out of the test provider?</h1>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout" id="provider-logout">Yes, sign me out</button></main></html>`;
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = '<!doctype html><html lang="en"><title>Signed out</title><main><h1 id="provider-signed-out">Signed out</h1></main></html>';
      },
    },
    encryption: { enabled: true },
    jwtUserinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== config.resource && resource !== config.other_resource) {
          throw new Error(`unknown resource ${resource}`);
        }
        return {
          scope: 'scope_all',
          audience: resource === config.resource ? config.audience : 'someone-else',
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
    return identity(token.accountId);
  },
  findAccount: (ctx, id) => {
    if (!accounts[id]) return undefined;
    return { accountId: id, claims: () => ({ sub: id, ...identity(id) }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    // First-party clients: consent is implied (as PSC does for a registered service).
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid scope_all profile');
    if (ctx.oidc.params.resource) grant.addResourceScope(ctx.oidc.params.resource, 'scope_all');
    await grant.save();
    return grant;
  },
  renderError: (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Provider error</title><h1 id="provider-error">${escape(out.error)}</h1><p>${escape(out.error_description || '')}</p>`;
  },
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    const options = Object.keys(accounts).map((id) => `<option value="${escape(id)}">${escape(accounts[id].family_name || id)} ${escape(accounts[id].given_name || '')}</option>`).join('');
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html lang="fr"><title>Test provider</title><main>
<h1>Test provider: sign in</h1>
<form method="post" action="/interaction/${details.uid}">
<label for="account">Account</label><select id="account" name="account">${options}</select>
<label for="acr">Level</label><select id="acr" name="acr"><option>eidas1</option><option>eidas2</option><option>eidas0</option></select>
<button type="submit" id="provider-submit">Sign in</button></form></main></html>`);
    return;
  }
  const form = await readForm(req);
  const accountId = form.get('account');
  if (!accounts[accountId]) {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'unknown account' });
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId, acr: form.get('acr') || 'eidas1' } }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, config.issuer);
  if (url.pathname === '/.well-known/wallet-openid-configuration') {
    req.url = '/.well-known/openid-configuration';  // PSC's discovery name (SPECS.md §b1)
  }
  if (url.pathname.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 400;
      res.end(String(err && err.message));
    });
    return;
  }
  callback(req, res);
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
