using Lutra.Core.Tensors;

namespace Lutra.Models.Tuning;

/// <summary>
/// One matrix's weights in a repacking kernel's layout: a buffer this process filled (owned, freed on Dispose),
/// or a verified region of a mapped repack cache file (the <see cref="RepackCache"/> owns the mapping).
/// </summary>
internal sealed unsafe class RepackedCopy : IDisposable
{
    private readonly NativeBuffer? _buffer;

    private RepackedCopy(NativeBuffer? buffer, byte* pointer, long length)
    {
        _buffer = buffer;
        Pointer = pointer;
        Length = length;
    }

    public static RepackedCopy Owned(NativeBuffer buffer) => new(buffer, buffer.Pointer, buffer.Length);

    public static RepackedCopy Mapped(byte* pointer, long length) => new(null, pointer, length);

    public byte* Pointer { get; }

    public long Length { get; }

    /// <summary>True when the bytes come from a repack cache file rather than from repacking in this process.</summary>
    public bool FromCache => _buffer is null;

    public void Dispose() => _buffer?.Dispose();
}
