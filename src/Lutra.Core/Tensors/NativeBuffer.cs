using System.Runtime.InteropServices;

namespace Lutra.Core.Tensors;

/// <summary>
/// 64-byte aligned unmanaged memory with an owner: repacked weights and other buffers that kernels read
/// through pointers and the GC must not move. Freed on Dispose (or, as a last resort, by the finalizer).
/// </summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    private byte* _pointer;

    private const long HugePage = 2 << 20;

    public NativeBuffer(long bytes)
        : this(bytes, 64)
    {
    }

    private NativeBuffer(long bytes, nuint alignment)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Length = bytes;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), alignment);
        if (bytes > 0)
            GC.AddMemoryPressure(bytes);
    }

    /// <summary>
    /// A buffer a kernel streams through once per token (repacked weights): from 2 MiB up it is 2 MiB-aligned and,
    /// on Linux, asks for transparent huge pages. With 4 KiB pages a 1B model's decode touches some 150 000 pages
    /// per token. One thread, llama-1b, alternating runs with and without the advice: Q4_0 (interleaved) 50.6/56.4/56.3
    /// against 48.5/52.3/51.5 t/s, TQ2_0 (interleaved) 110/115/114 against 104/96/106 t/s; at two threads this shared
    /// machine's second core came and went too often to tell.
    /// </summary>
    public static NativeBuffer ForStreaming(long bytes)
    {
        if (bytes < HugePage)
            return new NativeBuffer(bytes);
        var buffer = new NativeBuffer(bytes, (nuint)HugePage);
        // Whole huge pages only: the bytes past the last boundary may belong to another allocation.
        if (OperatingSystem.IsLinux())
            LinuxMemory.HugePages((nuint)buffer._pointer, (nuint)(bytes & ~(HugePage - 1)));
        return buffer;
    }

    public long Length { get; }

    public byte* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return _pointer;
        }
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() => Free();

    private void Free()
    {
        if (_pointer == null)
            return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        if (Length > 0)
            GC.RemoveMemoryPressure(Length);
    }
}
