using Lutra.Core.Tensors;

namespace Lutra.Models.Tuning;

/// <summary>One matrix's weights in a repacking kernel's layout, repacked at this load or read from the repack cache.</summary>
internal sealed unsafe class RepackedCopy(NativeBuffer buffer, bool fromCache) : IDisposable
{
    public byte* Pointer => buffer.Pointer;

    public long Length => buffer.Length;

    /// <summary>True when the bytes come from a repack cache file rather than from repacking in this process.</summary>
    public bool FromCache => fromCache;

    public void Dispose() => buffer.Dispose();
}
