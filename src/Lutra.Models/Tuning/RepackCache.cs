using System.Buffers.Binary;
using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;
using System.Text;
using Lutra.Core.Kernels;
using Lutra.Core.Tensors;

namespace Lutra.Models.Tuning;

/// <summary>What the repack cache did during one load.</summary>
/// <param name="Path">The cache file of this model.</param>
/// <param name="MatricesRead">Matrices whose repacked weights were read from the file instead of repacked.</param>
/// <param name="MatricesWritten">Matrices the file was rewritten with (0: it was up to date, or the write failed).</param>
/// <param name="WriteError">Why the file could not be written, if it could not.</param>
public sealed record RepackCacheReport(string Path, int MatricesRead, int MatricesWritten, string? WriteError);

/// <summary>
/// Repacked weights kept on disk, so a second load reads them instead of repacking (repacking a 1B model takes
/// 0.5-2.5 s on one core). Opt-in (<see cref="KernelOptions.RepackCacheDirectory"/>), because the file is as large
/// as the model's repacked matrices. The bytes are read into the same huge-page buffers a repack fills rather than
/// mapped, because decode streams them faster from 2 MiB pages than from a file mapping's 4 KiB ones.
/// <para>
/// One file per model path, valid only for the same model file (path, size, last write), CPU and instruction set,
/// and build of Lutra.Core (its module version id changes whenever a kernel, and so possibly a layout, changes);
/// anything else rewrites it. Each matrix's bytes carry an XXH3 hash that is checked before they are used, so a
/// damaged file costs a repack, never wrong weights. The file is replaced by renaming a complete temporary file
/// over it: a concurrent reader keeps the file it opened. Write failures (full disk, read-only directory) are
/// reported, not thrown: the model runs on the weights it repacked.
/// </para>
/// <para>
/// Layout (little-endian): "LUTRARPK", u32 version, u32 entries, u64 data start, u64 XXH3 of the header bytes
/// after this field up to the data start; the key string; per entry its matrix name, kernel id, u64 offset,
/// u64 length, u64 XXH3 of the bytes (strings as u32 length + UTF-8). Matrices start on 4 KiB boundaries.
/// </para>
/// </summary>
internal sealed unsafe class RepackCache : IDisposable
{
    private const ulong Magic = 0x4B50_5241_5254_554C; // "LUTRARPK" read as little-endian u64
    private const uint FormatVersion = 1;
    private const int FixedHeaderBytes = 32;
    private const int Alignment = 4096;
    private const int MaxStringBytes = 1 << 16;

    private readonly string _key;
    private readonly Dictionary<(string Matrix, string Kernel), Entry> _entries = [];
    private SafeFileHandle? _file;

    private RepackCache(string path, string key)
    {
        Path = path;
        _key = key;
    }

    public string Path { get; }

    /// <summary><c>$LUTRA_REPACK_CACHE</c>, or null when it is unset or <c>off</c>.</summary>
    public static string? DefaultDirectory()
    {
        var value = Environment.GetEnvironmentVariable(KernelOptions.RepackCacheVariable);
        return string.IsNullOrWhiteSpace(value) || value.Trim().Equals("off", StringComparison.OrdinalIgnoreCase) ? null : value.Trim();
    }

    /// <summary>
    /// The cache of the model named <paramref name="modelIdentity"/> (path|size|last write) in
    /// <paramref name="directory"/>: its file open when it exists and matches, else empty (filled by <see cref="Save"/>).
    /// </summary>
    public static RepackCache Open(string directory, string modelPath, string modelIdentity, string cpuIdentity)
    {
        var name = Convert.ToHexStringLower(XxHash3.Hash(Encoding.UTF8.GetBytes(System.IO.Path.GetFullPath(modelPath))));
        var path = System.IO.Path.Combine(System.IO.Path.GetFullPath(directory), $"{name}.lutra-repack");
        var build = typeof(MatVecKernel).Assembly.ManifestModule.ModuleVersionId;
        var cache = new RepackCache(path, $"{modelIdentity}\n{cpuIdentity}\nLutra.Core {build}");
        cache.OpenIfValid();
        return cache;
    }

    /// <summary>
    /// The cached bytes of <paramref name="matrix"/> in <paramref name="kernel"/>'s layout, or null when the file
    /// has none or they fail their hash.
    /// </summary>
    public RepackedCopy? TryGet(WeightMatrix matrix, MatVecKernel kernel)
    {
        var key = (matrix.Name, KernelSelector.Id(kernel));
        Entry? entry;
        lock (_entries)
        {
            if (_file is null || !_entries.TryGetValue(key, out entry) || entry.Length != matrix.RepackedByteSize(kernel))
                return null;
        }
        var buffer = NativeBuffer.ForStreaming(entry.Length);
        try
        {
            // Matrices are prepared in parallel: positional reads on the one handle need no lock.
            for (long done = 0; done < entry.Length;)
            {
                var chunk = (int)Math.Min(1 << 30, entry.Length - done);
                var read = RandomAccess.Read(_file, new Span<byte>(buffer.Pointer + done, chunk), entry.Offset + done);
                if (read == 0)
                    throw new EndOfStreamException();
                done += read;
            }
            if (Hash(buffer.Pointer, entry.Length) == entry.Hash)
                return new RepackedCopy(buffer, fromCache: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A file that shrank or failed to read is as good as damaged: repack.
        }
        buffer.Dispose();
        lock (_entries)
            _entries.Remove(key);
        return null;
    }

    /// <summary>
    /// Rewrites the file with every repacked matrix of <paramref name="matrices"/> unless it already holds exactly
    /// those (all of them were read from it).
    /// </summary>
    public RepackCacheReport Save(IReadOnlyList<WeightMatrix> matrices)
    {
        var repacked = matrices.Where(m => m.RepackedBytes > 0).ToArray();
        var read = repacked.Count(m => m.RepackedFromCache);
        if (read == repacked.Length)
            return new RepackCacheReport(Path, read, 0, null);
        var temporary = $"{Path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
            Write(temporary, repacked);
            File.Move(temporary, Path, overwrite: true);
            return new RepackCacheReport(Path, read, repacked.Length, null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            TryDelete(temporary);
            return new RepackCacheReport(Path, read, 0, e.Message);
        }
    }

    /// <summary>Closes the file; the copies already read stay valid (they are the matrices' own).</summary>
    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
    }

    private void Write(string path, WeightMatrix[] matrices)
    {
        var header = new MemoryStream();
        var writer = new BinaryWriter(header, Encoding.UTF8);
        WriteString(writer, _key);
        var entriesAt = header.Position;
        foreach (var m in matrices)
        {
            WriteString(writer, m.Name);
            WriteString(writer, KernelSelector.Id(m.Kernel));
            writer.Write(0L);
            writer.Write(0L);
            writer.Write(0UL);
        }
        var dataStart = AlignUp(FixedHeaderBytes + header.Length);
        header.Position = entriesAt;
        var offset = dataStart;
        foreach (var m in matrices)
        {
            SkipString(writer, m.Name);
            SkipString(writer, KernelSelector.Id(m.Kernel));
            writer.Write(offset);
            writer.Write(m.RepackedBytes);
            writer.Write(Hash(m.KernelData, m.RepackedBytes));
            offset = AlignUp(offset + m.RepackedBytes);
        }
        writer.Flush();
        var body = header.ToArray();

        Span<byte> fixedPart = stackalloc byte[FixedHeaderBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(fixedPart, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart[8..], FormatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart[12..], (uint)matrices.Length);
        BinaryPrimitives.WriteInt64LittleEndian(fixedPart[16..], dataStart);
        var padded = new byte[dataStart - FixedHeaderBytes];
        body.CopyTo(padded, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(fixedPart[24..], XxHash3.HashToUInt64(padded));

        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        file.Write(fixedPart);
        file.Write(padded);
        foreach (var m in matrices)
        {
            for (long done = 0; done < m.RepackedBytes; done += int.MaxValue / 2)
                file.Write(new ReadOnlySpan<byte>(m.KernelData + done, (int)Math.Min(int.MaxValue / 2, m.RepackedBytes - done)));
            file.Write(new byte[AlignUp(m.RepackedBytes) - m.RepackedBytes]);
        }
        file.Flush(flushToDisk: true);
    }

    /// <summary>Keeps the file open when its header is intact and names this cache's key; otherwise leaves the cache empty.</summary>
    private void OpenIfValid()
    {
        SafeFileHandle? file = null;
        try
        {
            file = File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            var length = RandomAccess.GetLength(file);
            Span<byte> fixedPart = stackalloc byte[FixedHeaderBytes];
            if (length < FixedHeaderBytes || RandomAccess.Read(file, fixedPart, 0) != FixedHeaderBytes
                || BinaryPrimitives.ReadUInt64LittleEndian(fixedPart) != Magic
                || BinaryPrimitives.ReadUInt32LittleEndian(fixedPart[8..]) != FormatVersion)
                return;
            var count = BinaryPrimitives.ReadUInt32LittleEndian(fixedPart[12..]);
            var dataStart = BinaryPrimitives.ReadInt64LittleEndian(fixedPart[16..]);
            if (dataStart < FixedHeaderBytes || dataStart > length || dataStart > 64L << 20 || dataStart % Alignment != 0)
                return;
            var header = new byte[dataStart - FixedHeaderBytes];
            if (RandomAccess.Read(file, header, FixedHeaderBytes) != header.Length
                || XxHash3.HashToUInt64(header) != BinaryPrimitives.ReadUInt64LittleEndian(fixedPart[24..]))
                return;
            var entries = ReadEntries(header, count, dataStart, length);
            if (entries is null)
                return;
            foreach (var e in entries)
                _entries[(e.Matrix, e.Kernel)] = e;
            _file = file;
            file = null; // the cache owns it now
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // Missing or unreadable: an empty cache, filled at the next save.
        }
        finally
        {
            file?.Dispose();
        }
    }

    private List<Entry>? ReadEntries(byte[] header, uint count, long dataStart, long fileLength)
    {
        try
        {
            var reader = new BinaryReader(new MemoryStream(header), Encoding.UTF8);
            if (ReadString(reader) != _key)
                return null;
            var entries = new List<Entry>();
            for (var i = 0u; i < count; i++)
            {
                var entry = new Entry(ReadString(reader), ReadString(reader), reader.ReadInt64(), reader.ReadInt64(), reader.ReadUInt64());
                if (entry.Offset < dataStart || entry.Offset % Alignment != 0 || entry.Length <= 0 || entry.Length > fileLength - entry.Offset)
                    return null;
                entries.Add(entry);
            }
            return entries;
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException or DecoderFallbackException)
        {
            return null;
        }
    }

    private static string ReadString(BinaryReader reader)
    {
        var length = reader.ReadUInt32();
        if (length > MaxStringBytes)
            throw new FormatException("string too long");
        var bytes = reader.ReadBytes((int)length);
        if (bytes.Length != length)
            throw new EndOfStreamException();
        return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
    }

    private static void WriteString(BinaryWriter writer, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        writer.Write((uint)bytes.Length);
        writer.Write(bytes);
    }

    private static void SkipString(BinaryWriter writer, string text) =>
        writer.Seek(sizeof(uint) + Encoding.UTF8.GetByteCount(text), SeekOrigin.Current);

    private static ulong Hash(byte* data, long length)
    {
        var hash = new XxHash3();
        for (long done = 0; done < length; done += int.MaxValue / 2)
            hash.Append(new ReadOnlySpan<byte>(data + done, (int)Math.Min(int.MaxValue / 2, length - done)));
        return hash.GetCurrentHashAsUInt64();
    }

    private static long AlignUp(long value) => (value + Alignment - 1) / Alignment * Alignment;

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temporary file is harmless: it is never read.
        }
    }

    private sealed record Entry(string Matrix, string Kernel, long Offset, long Length, ulong Hash);
}
