// Passkeys (WebAuthn) for built-in patient accounts: fetch the options, ask the browser, submit the form.
"use strict";
(function () {
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

  async function options(form) {
    const body = new URLSearchParams({ csrf_token: form.elements.csrf_token.value });
    const answer = await fetch(form.dataset.options, { method: "POST", body, credentials: "same-origin" });
    if (!answer.ok) throw new Error("options " + answer.status);
    return answer.json();
  }

  async function create(form) {
    const o = await options(form);
    o.challenge = bytes(o.challenge);
    o.user.id = bytes(o.user.id);
    (o.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const made = await navigator.credentials.create({ publicKey: o });
    return {
      id: made.id, rawId: b64(made.rawId), type: made.type,
      response: {
        clientDataJSON: b64(made.response.clientDataJSON),
        attestationObject: b64(made.response.attestationObject),
        transports: made.response.getTransports ? made.response.getTransports() : [],
      },
      clientExtensionResults: made.getClientExtensionResults(),
    };
  }

  async function get(form) {
    const o = await options(form);
    o.challenge = bytes(o.challenge);
    (o.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    const got = await navigator.credentials.get({ publicKey: o });
    return {
      id: got.id, rawId: b64(got.rawId), type: got.type,
      response: {
        clientDataJSON: b64(got.response.clientDataJSON),
        authenticatorData: b64(got.response.authenticatorData),
        signature: b64(got.response.signature),
        userHandle: got.response.userHandle ? b64(got.response.userHandle) : null,
      },
      clientExtensionResults: got.getClientExtensionResults(),
    };
  }

  function wire(id, ceremony) {
    const form = document.getElementById(id);
    if (!form) return;
    if (!window.PublicKeyCredential) {
      document.getElementById("passkey-unsupported").hidden = false;
      return;
    }
    form.addEventListener("submit", async (event) => {
      if (form.elements.credential.value) return;
      event.preventDefault();
      try {
        form.elements.credential.value = JSON.stringify(await ceremony(form));
      } catch (error) {
        form.elements.credential.value = "{}";  // the server answers the refusal
      }
      form.submit();
    });
  }

  wire("register-form", create);
  wire("passkey-form", get);
})();
