// A real OpenID provider for the Basis OIDC tests, built on the npm package oidc-provider.
//
// It listens on 127.0.0.1 on a free port and prints `READY <issuer>` once it answers.
// One public "native" client, `basis`, uses PKCE (S256); as RFC 8252 §7.3 allows for
// loopback redirects, any port of http://127.0.0.1/auth/oidc/callback is accepted, so the
// app under test may listen on port 0.
//
// Logins complete without a form: the interaction handler signs in the account named by
// `login_hint` (default `alice`) and grants the requested scopes.

import http from 'node:http';
import Provider from 'oidc-provider';

const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Liddell' },
  // Claims an address it has not verified: must not take over an existing account.
  mallory: { email: 'victim@example.com', email_verified: false, name: 'Mallory' },
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'basis',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/auth/oidc/callback'],
    }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    cookies: { keys: ['basis-test-only-cookie-key'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      if (!ACCOUNTS[id]) return undefined;
      return { accountId: id, claims: async () => ({ sub: `${id}-subject`, ...ACCOUNTS[id] }) };
    },
  });

  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/interaction/')) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: details.params.login_hint || 'alice' } };
    } else {
      const grant = new provider.Grant({
        accountId: details.session.accountId,
        clientId: details.params.client_id,
      });
      grant.addOIDCScope('openid email profile');
      result = { consent: { grantId: await grant.save() } };
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.status = 303;
    ctx.redirect(to);
  });

  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});

// The test may stop reading our output; never die of a closed pipe.
process.stdout.on('error', () => {});

// Stop with the test: when stdin closes (the test process dropped its handle), exit.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
