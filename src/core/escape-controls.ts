const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Text for the terminal, from something nixoci does not control (an image's tags or history, a
 * server's answer): every C0/C1 control character becomes `\xNN`, unless `keep` gives it another
 * replacement (a line break kept, a tab made a space), so none reaches the terminal as it is.
 */
export function escapeControls(s: string, keep: (c: string) => string | undefined = () => undefined): string {
  return s.replace(CONTROL, (c) => keep(c) ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
