// The short text an operator pastes to the customer: the three records and
// what to watch out for, in the customer's language. Plain text, never HTML.

const TEXTS = {
  en: {
    name: 'English',
    intro: (d) => `Hello,\n\nSo that we can send your invoices from ${d} and they arrive in the inbox rather than in spam, please add these three DNS records to the domain ${d} (or forward this to whoever manages its DNS):`,
    row: (r) => `Host: ${r.label}\nType: ${r.kind}\nValue: ${r.value}`,
    outro: (d) => `Enter the host names exactly as shown: most DNS providers add "${d}" by themselves, so do not type it again. If your provider offers proxying (e.g. Cloudflare's orange cloud), switch it off ("DNS only") for these records. Let us know once they are in place and we will check them.\n\nThank you!`,
  },
  nl: {
    name: 'Nederlands',
    intro: (d) => `Hallo,\n\nZodat wij uw facturen vanaf ${d} kunnen versturen en ze in de inbox aankomen in plaats van bij de spam, vragen wij u deze drie DNS-records toe te voegen aan het domein ${d} (of dit bericht door te sturen naar wie uw DNS beheert):`,
    row: (r) => `Naam: ${r.label}\nType: ${r.kind}\nWaarde: ${r.value}`,
    outro: (d) => `Vul de namen precies zo in als hierboven: de meeste DNS-providers voegen "${d}" zelf toe, typ het dus niet nog een keer. Biedt uw provider een proxy aan (zoals de oranje wolk van Cloudflare), zet die dan uit ("alleen DNS") voor deze records. Laat het ons weten zodra ze zijn toegevoegd, dan controleren wij ze.\n\nAlvast bedankt!`,
  },
};

/** The languages offered, as [code, name]. */
export const LANGUAGES = Object.entries(TEXTS).map(([code, t]) => [code, t.name]);

/** The text for domain `d` (a DomainV1) in `lang`. */
export function customerText(d, lang) {
  const t = TEXTS[lang] || TEXTS.en;
  const records = d.customer_records.map((r) => t.row({ label: r.label, kind: r.type, value: r.value }));
  return [t.intro(d.domain), ...records, t.outro(d.domain)].join('\n\n');
}
