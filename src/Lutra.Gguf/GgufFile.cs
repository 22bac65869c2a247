using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;

namespace Lutra.Gguf;

/// <summary>
/// A GGUF file (version 2 or 3, little-endian) opened over a read-only memory map. Only the header is
/// parsed into managed memory; tensor data stays in the map and is exposed as spans and pointers into it.
/// Every count, length, offset and size is validated against the file before use; any violation raises
/// <see cref="GgufFormatException"/> naming the field and byte offset.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as little-endian u32
    public const uint DefaultAlignment = 32;
    public const string AlignmentKey = "general.alignment";

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private GCHandle _pin;
    private byte* _base;
    private readonly Dictionary<string, int> _tensorIndex;
    private readonly GgufTensorInfo[] _tensors;

    private GgufFile(string? path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, GCHandle pin, byte* basePtr,
        long length, GgufHeader header)
    {
        Path = path;
        _map = map;
        _view = view;
        _pin = pin;
        _base = basePtr;
        Length = length;
        Version = header.Version;
        Metadata = header.Metadata;
        _tensors = header.Tensors;
        Alignment = header.Alignment;
        DataStart = header.DataStart;
        HeaderLength = header.HeaderLength;
        _tensorIndex = header.TensorIndex;
    }

    /// <summary>The file path, or null for an in-memory file.</summary>
    public string? Path { get; }

    public long Length { get; }

    public uint Version { get; }

    public GgufMetadata Metadata { get; }

    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    public uint Alignment { get; }

    /// <summary>
    /// Bytes from the magic through the last tensor info. The data section starts at the next multiple of
    /// <see cref="Alignment"/>; a file without tensors may end right here.
    /// </summary>
    public long HeaderLength { get; }

    /// <summary>Absolute offset of the tensor data section.</summary>
    public long DataStart { get; }

    /// <summary>
    /// Opens and validates a GGUF file by memory-mapping it read-only. Only the header pages are read;
    /// the tensor data is paged in when it is first touched.
    /// </summary>
    public static GgufFile Open(string path)
    {
        // One handle for both the length and the map, so they describe the same file.
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        var pointerAcquired = false;
        try
        {
            var length = stream.Length;
            if (length < GgufHeaderReader.MinimumFileSize)
                throw new GgufFormatException("magic", 0, $"file is {length} bytes, too small to be a GGUF file");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            pointerAcquired = true;
            p += view.PointerOffset;
            var header = GgufHeaderReader.Read(p, length);
            return new GgufFile(path, map, view, default, p, length, header);
        }
        catch
        {
            if (pointerAcquired)
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Parses a GGUF image held in memory (tests, fuzzing, files built in memory).</summary>
    public static GgufFile FromBytes(byte[] bytes)
    {
        var pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        try
        {
            var p = (byte*)pin.AddrOfPinnedObject();
            var header = GgufHeaderReader.Read(p, bytes.LongLength);
            return new GgufFile(null, null, null, pin, p, bytes.LongLength, header);
        }
        catch
        {
            pin.Free();
            throw;
        }
    }

    public bool TryGetTensor(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out GgufTensorInfo? info)
    {
        info = _tensorIndex.TryGetValue(name, out var i) ? _tensors[i] : null;
        return info is not null;
    }

    public GgufTensorInfo GetTensor(string name) =>
        TryGetTensor(name, out var info) ? info : throw new KeyNotFoundException($"tensor '{name}' is not in the file");

    /// <summary>Pointer to the first byte of a tensor's data inside the map. Valid until Dispose.</summary>
    public byte* GetTensorPointer(GgufTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + info.DataOffset;
    }

    /// <summary>A tensor's bytes as a span into the map (tensors of 2 GiB or more: use the pointer).</summary>
    public ReadOnlySpan<byte> GetTensorData(GgufTensorInfo info)
    {
        if (info.ByteSize > int.MaxValue)
            throw new NotSupportedException($"tensor '{info.Name}' is {info.ByteSize} bytes; use GetTensorPointer");
        return new ReadOnlySpan<byte>(GetTensorPointer(info), (int)info.ByteSize);
    }

    /// <summary>
    /// Tells the OS that this process no longer needs the mapped pages wholly inside [<paramref name="start"/>,
    /// <paramref name="start"/> + <paramref name="length"/>): used once a matrix has a repacked copy, so the
    /// weights are not resident twice. The map is read-only and file-backed, so a page read again later
    /// (dequantization, reference mode) faults back in from the file. Linux only (madvise MADV_DONTNEED);
    /// elsewhere, and for in-memory files (whose bytes have no file behind them), it does nothing.
    /// Returns the bytes released.
    /// </summary>
    public long ReleaseMappedPages(byte* start, long length)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (start < _base || length > Length || start - _base > Length - length)
            throw new ArgumentOutOfRangeException(nameof(start), "the range is not inside the mapped file");
        if (_map is null || !OperatingSystem.IsLinux())
            return 0;
        var page = (nuint)Environment.SystemPageSize;
        var first = ((nuint)start + page - 1) & ~(page - 1);
        var end = ((nuint)start + (nuint)length) & ~(page - 1);
        if (end <= first)
            return 0;
        return LinuxMemory.DontNeed(first, end - first) ? (long)(end - first) : 0;
    }

    /// <summary>A byte range of the whole file (e.g. to copy the header verbatim).</summary>
    public ReadOnlySpan<byte> GetBytes(long offset, int count)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (offset > Length - count)
            throw new ArgumentOutOfRangeException(nameof(count));
        return new ReadOnlySpan<byte>(_base + offset, count);
    }

    public void Dispose()
    {
        if (_base == null)
            return;
        _base = null;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        if (_pin.IsAllocated)
            _pin.Free();
    }
}
