using System.Runtime.InteropServices;

namespace Lutra.Core.Tensors;

/// <summary>
/// 64-byte aligned unmanaged memory with an owner: repacked weights and other buffers that kernels read
/// through pointers and the GC must not move. Freed on Dispose (or, as a last resort, by the finalizer).
/// </summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    private byte* _pointer;

    public NativeBuffer(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Length = bytes;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        if (bytes > 0)
            GC.AddMemoryPressure(bytes);
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
