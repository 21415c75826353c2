// What a driver loader checks before it lets a module file near the kernel,
// read from the bytes themselves (no modinfo: a truncated or foreign file must
// say "no" here, not in insmod): the .ko's modinfo strings (vermagic,
// srcversion, name), and the running kernel's GNU build id from
// /sys/kernel/notes, which tells two builds of one release apart.

/** The key=value strings modpost puts in a module's .modinfo section. */
export interface ModuleInfo {
  name?: string;
  vermagic?: string;
  srcversion?: string;
  version?: string;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * The modinfo fields of a kernel module's ELF file, or undefined when the bytes
 * are not a whole 64-bit little-endian ELF file with a .modinfo section (a copy
 * cut short, or not a module).
 */
export function moduleInfo(ko: Buffer): ModuleInfo | undefined {
  // ELF64 header: class 2, little endian 1; section headers at e_shoff.
  if (ko.length < 64 || !ko.subarray(0, 4).equals(ELF_MAGIC) || ko[4] !== 2 || ko[5] !== 1) return undefined;
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > ko.length || shstrndx >= shnum) return undefined;
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return { name: ko.readUInt32LE(at), offset: Number(ko.readBigUInt64LE(at + 0x18)), size: Number(ko.readBigUInt64LE(at + 0x20)) };
  };
  const names = section(shstrndx);
  if (names.offset + names.size > ko.length) return undefined;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameAt = names.offset + s.name;
    if (nameAt >= ko.length) return undefined;
    const end = ko.indexOf(0, nameAt);
    if (ko.toString('latin1', nameAt, end < 0 ? ko.length : end) !== '.modinfo') continue;
    if (s.offset + s.size > ko.length) return undefined;
    const info: ModuleInfo = {};
    for (const entry of ko.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      const key = entry.slice(0, eq);
      if (key === 'name' || key === 'vermagic' || key === 'srcversion' || key === 'version') info[key] = entry.slice(eq + 1);
    }
    return info;
  }
  return undefined;
}

const NT_GNU_BUILD_ID = 3;

/** The GNU build id (hex) in the kernel's ELF notes (/sys/kernel/notes), if it has one. */
export function kernelBuildId(notes: Buffer): string | undefined {
  const align = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= notes.length;) {
    const namesz = notes.readUInt32LE(at);
    const descsz = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const name = at + 12;
    const desc = name + align(namesz);
    if (desc + descsz > notes.length) return undefined;
    if (type === NT_GNU_BUILD_ID && notes.toString('latin1', name, name + namesz) === 'GNU\0') return notes.toString('hex', desc, desc + descsz);
    at = desc + align(descsz);
  }
  return undefined;
}
